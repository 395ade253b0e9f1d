"""What MLflow executes to load the risk model (models-from-code).

It imports the class from the installed package, so the loaded object is a real
`models.risk_model.RiskModel` and `load_context` rebuilds it from the logged artifacts.
"""

from mlflow.models import set_model

from models.risk_model import RiskModel

set_model(RiskModel())
