"""Framework integrations: LangChain and LlamaIndex vector stores over an embedops alias.

Nothing is imported here: ``import embedops`` never loads a framework. Import the
module of the framework you use (each needs its extra)::

    from embedops.integrations.langchain import EmbedopsVectorStore     # pip install 'embedops[langchain]'
    from embedops.integrations.llama_index import EmbedopsVectorStore   # pip install 'embedops[llama-index]'
"""
