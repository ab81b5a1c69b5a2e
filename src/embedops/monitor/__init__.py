"""Health monitoring: freshness, silent model changes, drift, canaries, eval-set coverage.

Every check reads the catalog (and the sources, for freshness) and reports;
none of them changes an index. What they write is their own state (freshness
marks, probes, drift references, canary runs) and a ``monitor.*`` ledger row.

=================  ===========================================  ==========================
module             what                                         command
=================  ===========================================  ==========================
``freshness``      stale documents, lag per source, SLOs        ``embedops freshness``
``fingerprint``    the model still makes the stored vectors     ``embedops check``
``drift``          recent ingests / queries vs a reference      ``embedops check``
``canary``         recall of canary eval sets over time         ``embedops monitor canary``
``coverage``       do eval queries still look like traffic?     ``embedops coverage``
``checks``         all of the above, with exit codes            ``embedops check``
``metrics``        Prometheus exposition                        ``embedops monitor --port``
=================  ===========================================  ==========================

Importing this package is cheap: submodules are imported by what uses them.
"""
