"""Raw tables -> as-of feature rows: the data contract, the synthetic county, the snapshot."""
