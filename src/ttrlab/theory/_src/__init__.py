"""The machinery behind `ttrlab.theory.ntk` (private: import from `ttrlab.theory.ntk`)."""
