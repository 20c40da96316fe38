"""What the gRPC adapters of both sides share: the mapping between the project's codes and gRPC's statuses."""
