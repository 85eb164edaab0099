"""PACS in and out: the DICOM receiver, its spool, the study worker and the result outbox.

``receiver`` (pynetdicom C-STORE SCP) only writes received bytes to the ``spool``; the ``worker``
groups instances by study after a quiet period and predicts through the service's one
prediction path (:mod:`radvigil.service.predicting`); the ``outbox`` delivers the SR and the
Secondary Capture built by :mod:`radvigil.reports` back to the PACS, exactly once.
"""
