"""`ssp bench`: latency per stage, backend and precision, throughput, text-cache gain, memory,
parameters / FLOPs per module and device estimates, written as JSON, Markdown and PNG plots."""

__all__: list[str] = []
