"""The chain layer: compiler, node supervisors, client, outbox writer."""
