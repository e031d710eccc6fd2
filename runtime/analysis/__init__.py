"""Analysis of recorded runs: indicators, run and sweep summaries, plots and the HTML report."""
