// The node: the shell around the replica.
