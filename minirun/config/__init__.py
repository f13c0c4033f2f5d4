"""Parsing and validation of everything a user hands minirun: config.json, Pod manifests."""
