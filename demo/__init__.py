"""``plantwire demo``: the whole stack in one process -- the simulated Binh Duong plant, edge
agents across an emulated 5G link with one outage, a broker, the gateway, a store, and analytics
(OEE and anomaly alerts) -- with a live view or a JSON report that sets every figure beside the
simulator's truth."""
