"""The project's own protobuf definitions (*.proto) and their generated modules (`make proto`)."""
