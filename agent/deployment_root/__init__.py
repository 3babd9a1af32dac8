"""The deployment root on disk: its layout, markers, crash records and retention."""
