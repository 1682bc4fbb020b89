"""WSGI entry point: ``flask run`` and ``gunicorn app:app`` both find ``app`` here."""
from siwa_web import create_app

app = create_app()
