"""The application specification (``appspec.yml``): its typed model and its parser."""
