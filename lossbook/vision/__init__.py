"""Image synthesis, restoration and segmentation losses."""
