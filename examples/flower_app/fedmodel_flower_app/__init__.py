"""A Flower app running fedmodel's FedAvg on scikit-learn's digits (see ``pyproject.toml``)."""
