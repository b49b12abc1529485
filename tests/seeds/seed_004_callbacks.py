# Seed 004 (LangChain streaming with callbacks), with nbllm in place of langchain's classes.
from nbllm import LLM, StreamingStdOutCallbackHandler

OpenAI = ChatOpenAI = LLM


def Anthropic(**kwargs):
    return LLM("anthropic:claude-haiku-4-5", **kwargs)


llm = OpenAI(streaming=True, callbacks=[StreamingStdOutCallbackHandler()], temperature=0)
resp = llm("Write me a song about sparkling water.")
print()

print(llm.generate(["Tell me a joke."]))

chat = ChatOpenAI(streaming=True, callbacks=[StreamingStdOutCallbackHandler()], temperature=0)
resp = chat([{"role": "user", "content": "Write me a song about sparkling water."}])
print()

llm = Anthropic(streaming=True, callbacks=[StreamingStdOutCallbackHandler()], temperature=0)
llm("Write me a song about sparkling water.")
print()
