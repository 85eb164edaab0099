"""Data: reading radiographs, dataset versions, image QC and controlled shifts."""
