"""The tests' harnesses, one module per actor a test starts, talks to or fakes.

Fixtures stay in the ``conftest.py`` files; what they set up is built here, where the
benchmarks (``benchmarks/``) use the same harnesses:

- ``local_agent``: ``codedeploy-local`` run as a subprocess with its own configuration;
- ``daemon``: ``codedeploy-agent`` run as a subprocess against the command service stub;
- ``notify_socket``: the service manager's end of ``NOTIFY_SOCKET``;
- ``command_service``: the command service stub on loopback (JSON 1.1, SigV4, faults),
  the tests' host identity, and the reading of what a host sent;
- ``fake_command_service``: an in-process command service client, for poller logic that
  needs no wire;
- ``fake_revision_fetcher``: an in-process revision fetcher, for DownloadBundle's logic
  without a revision source;
- ``poller_host``: a host's folders and poller settings for in-process poller tests;
- ``traced_revisions``: revisions whose hooks leave a trace, and their specifications;
- ``archives``: revision folders, bundles packed from them, and crafted tar and zip files;
- ``install_workspace``: a revision, a deployment root and destinations for the installer;
- ``s3_servers``: moto's S3, a misbehaving S3 stub, and SeaweedFS, on loopback;
- ``http_proxy``: a forwarding HTTP proxy that records what went through it;
- ``signing``: a throw-away CA, signers, and signed deployment specifications;
- ``imds``: an EC2 instance metadata service stand-in;
- ``systemd_box`` (with its boot program ``systemd_box_boot``): a real systemd booted in a
  throwaway overlay root; ``hide_systemd``: a command run as on a host without systemd;
- ``agent_service``: the agent installed as a systemd service in a box;
- ``host_install``: release bundles and the installer, run in a box;
- ``server``: ``codedeploy-server`` as a real process; ``aws_cli``: the real AWS CLI pointed
  at it; ``postgres``: a throw-away PostgreSQL 15 cluster run by ``nobody``;
- ``processes``: a test's own processes found by a marker, and signals at a known moment;
- ``tmpfs``: a small disk that fills up; ``waiting``: bounded waits; ``checkout``: where
  this checkout is.
"""
