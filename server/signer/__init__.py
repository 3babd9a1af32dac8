"""The server's deployment-specification signer: its key, its CA, and PKCS#7 signing."""
