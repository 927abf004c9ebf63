"""Part II's service: what runs around the model while a request is served (chapters 7-8).

One module per chapter, each generated from its chapter's solution notebook:
``gateway`` (chapter 7) admits a request before any model work: API keys kept as HMACs
and compared in constant time, token buckets for requests and tokens per minute, a
quota per day, and the chat-completions body checked field by field, refusals in
OpenAI's error shape; chapter 8's prompt assembly turns an admitted request's messages
into the model's prompt. The server is a driver on top of the service and the engine;
the service never imports the server, and the engine never imports the service.
"""
