"""The encoded-weight format: ``encode`` / ``decode`` of the XOR-coded sparse-quantised weights
(:mod:`.xor_codec`), the versioned self-describing byte container (:mod:`.stream`) and bit packing."""
