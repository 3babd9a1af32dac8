"""What the agent needs to know about the filesystems it writes to: free space and holes."""
