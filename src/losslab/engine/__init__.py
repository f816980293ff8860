"""How every run trains: the event protocol, the one loop (`fit`), prepared problems, the run path
(`runs.execute`) and the engines that run many specs (sequential and stacked, behind `trials.run_trials`)."""
