"""The part of the CodeDeploy API (``CodeDeploy_20141006``) that ``aws deploy`` uses,
answered in the shapes of botocore's CodeDeploy model, with CodeDeploy's error names."""
