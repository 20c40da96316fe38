"""The NiceGUI dashboard: live order books in the browser and a raw JSON WebSocket/REST API for scripts."""
