"""The review web app: ``semcat.web.app.create_app(Settings(...))`` builds it; ``semcat serve`` runs it."""
