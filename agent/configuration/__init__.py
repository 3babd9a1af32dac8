"""The agent configuration (``codedeployagent.yml``): typed model and loader."""
