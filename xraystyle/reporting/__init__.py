"""Outputs people read: synthetic image files with provenance, and counterfactual reports.

- ``export``: PNG / derived DICOM files of synthesis results, sidecars and the index;
- ``counterfactual``: the numbers and images of one report (``build_report``);
- ``figures`` (matplotlib, Agg) and ``html`` (self-contained page, cohort index);
- ``provenance``: model and source records, the technical-metadata whitelist.
"""
