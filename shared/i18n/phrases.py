"""The fixed sentences the server itself writes into answers (the no-answer text, the offline answerer's),
per language. To add a language, add one block with every key (tests/test_language.py checks that);
a language without a block gets English. The widget's own strings live in public/i18n/.
"""

from __future__ import annotations

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "dont_know": "I'm sorry, I don't know the answer to that. I couldn't find it in the information I have.",
        "offline_intro": "No language model is configured, so I can't write an answer. These are the most "
                         "relevant passages I found:",
        "offline_empty": "I don't have any knowledge to answer from yet, and no language model is configured.",
    },
    "de": {
        "dont_know": "Das weiß ich leider nicht. In den Informationen, die mir vorliegen, finde ich dazu keine "
                     "Antwort.",
        "offline_intro": "Es ist kein Sprachmodell eingerichtet, daher kann ich keine Antwort formulieren. Das sind "
                         "die passendsten Textstellen, die ich gefunden habe:",
        "offline_empty": "Mir liegt noch kein Wissen vor, aus dem ich antworten könnte, und es ist kein "
                         "Sprachmodell eingerichtet.",
    },
    "fr": {
        "dont_know": "Désolé, je ne connais pas la réponse. Je ne l'ai pas trouvée dans les informations dont je "
                     "dispose.",
        "offline_intro": "Aucun modèle de langage n'est configuré, je ne peux donc pas rédiger de réponse. Voici "
                         "les passages les plus pertinents que j'ai trouvés :",
        "offline_empty": "Je n'ai encore aucune connaissance à partir de laquelle répondre, et aucun modèle de "
                         "langage n'est configuré.",
    },
    "es": {
        "dont_know": "Lo siento, no sé la respuesta. No la he encontrado en la información de la que dispongo.",
        "offline_intro": "No hay ningún modelo de lenguaje configurado, así que no puedo redactar una respuesta. "
                         "Estos son los pasajes más relevantes que he encontrado:",
        "offline_empty": "Todavía no tengo conocimientos con los que responder y no hay ningún modelo de lenguaje "
                         "configurado.",
    },
}


def phrase(name: str, language: str) -> str:
    """A fixed sentence in `language` (an ISO code such as 'de' or 'de-AT'); English when we lack it."""
    block = PHRASES.get(language.split("-")[0].strip().lower(), PHRASES["en"])
    return block.get(name) or PHRASES["en"][name]
