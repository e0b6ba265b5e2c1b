//! The B2BUA: calls, legs, dialogs; wires transactions, the ACD and media.
