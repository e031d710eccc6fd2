"""Gymnasium and PettingZoo environments on the runtime. Not built yet (a later issue); nothing is registered."""
