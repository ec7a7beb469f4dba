"""Helpers for PlantWire's own tests and benchmarks (and for anyone testing against PlantWire):
real Mosquitto and InfluxDB processes on free ports in a temporary folder."""
