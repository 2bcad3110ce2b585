"""The server side of `sealdrop serve`: gunicorn run with our options, patches and logger,
and whatever publishes the service (the onion service), joined once per server."""
