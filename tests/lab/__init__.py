"""Tests of the lab (iscsi_helper.lab): the emulators and the embedded wire target."""
