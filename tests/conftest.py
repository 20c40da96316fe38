"""Shared pytest configuration.

NiceGUI's simulated-user plugin provides the ``user`` and ``create_user`` fixtures (it runs the app in
``dashboard/main.py``, see ``main_file`` in pyproject.toml).
"""

pytest_plugins = ["nicegui.testing.user_plugin"]
