"""The web UI: pages served at / that call the API with the token the user enters."""
