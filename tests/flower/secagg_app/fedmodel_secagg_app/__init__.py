"""FedAvg on digits through Flower's SecAgg+ (fedmodel's SecAggPlusStrategy and secure client_app)."""
