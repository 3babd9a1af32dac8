"""One command of a deployment on this host: one module per command, and the dispatcher.

``DownloadBundle`` (:mod:`.download_bundle`), ``Install`` (:mod:`.install`) and the
lifecycle events (:mod:`.lifecycle_event`); :mod:`.dispatch` picks the module of a
command name. The revision pipeline itself is :mod:`agent.revision`, the hook policy
:mod:`agent.lifecycle_event`.
"""
