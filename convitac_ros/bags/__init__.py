"""Bags recorded by a team: topic mapping, labels files, labelling helper, bag -> dataset."""
