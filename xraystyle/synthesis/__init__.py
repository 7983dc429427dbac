"""Synthesis: load the images a user names (sources), translate them in batches, and the
``synth`` job from files or manifests to written outputs (PNG, derived DICOM, index.csv)."""

from .batches import SynthResult, style_latents, synthesize
from .sources import (
                      LoadLog,
                      ReferenceImage,
                      SourceImage,
                      SourceSpec,
                      list_sources,
                      load_reference,
                      load_source,
                      load_sources,
                      manifest_sources,
                      pixel_sha256,
                      reference_domain_from_manifest,
)

__all__ = ["LoadLog", "ReferenceImage", "SourceImage", "SourceSpec", "SynthResult", "list_sources", "load_reference",
           "load_source", "load_sources", "manifest_sources", "pixel_sha256", "reference_domain_from_manifest",
           "style_latents", "synthesize"]
