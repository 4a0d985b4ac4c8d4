"""Unknown detectors: each is fitted on training outputs, then scores test outputs.

Convention: an unknown score is higher for inputs more likely unknown.
"""

from osrkit.scores.base import Scorer, ScoreResult
from osrkit.scores.cac import CACScore, cac_score
from osrkit.scores.crosr import CROSRScorer
from osrkit.scores.openmax import OpenMax
from osrkit.scores.ovr import MOvRScore, OvRScore
from osrkit.scores.softmax import EnergyScore, MLSScore, MSPScore

__all__ = ["Scorer", "ScoreResult", "CACScore", "cac_score", "CROSRScorer", "OpenMax",
           "EnergyScore", "MLSScore", "MSPScore", "MOvRScore", "OvRScore"]
