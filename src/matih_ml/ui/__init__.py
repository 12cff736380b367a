"""The web pages under ``/ui/``: static files that call the API with the user's credential."""
