"""End-to-end tests: the course in JupyterLab, driven through a real headless Chromium."""
