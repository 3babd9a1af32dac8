"""Who is calling: SigV4 signatures checked against the server's keys, and what each kind
of key may call."""
