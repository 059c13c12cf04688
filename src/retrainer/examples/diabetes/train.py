"""The approved training code: retrainer calls train(X_train, y_train, params)."""

from sklearn.linear_model import Ridge


def train(X_train, y_train, params):
    """Fit the production Ridge regression with the approved parameters."""
    return Ridge(**params).fit(X_train, y_train)
