"""`fume serve`: the HTTP API, live sources, dashboard, alerts and history of a monitoring service
(fume.serve.app, .sources, .service, .alerts, .history; the dashboard's files in static/)."""
