"""Live economies: ``agora serve`` runs a World that outside agents join over HTTP and WebSocket.

:mod:`runtime.serve.host` holds the served run (seats, tokens, the tick loop);
:mod:`runtime.serve.app` the HTTP and WebSocket routes; ``dashboard.html`` the page served at
``/``.
"""
