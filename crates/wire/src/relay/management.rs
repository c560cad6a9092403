//! Management message bodies: the AFGH-protected (stream id, key index, key) of a section.
