//! The ACD: queues, agent seats and the offer decision, as a sans-IO core.
