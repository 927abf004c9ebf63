"""Word lists and sentence templates the crawl generator writes French, German and Spanish with.

Chapter 1's crawl needs text in several languages and no registry package ships any
offline, so the generator writes it: common words of each language (function words
first, which give a language its character n-grams), and the island's facts in
templates. The words are real; the sentences are word salad with real statistics at
the level a character n-gram identifier sees. English comes from real text instead.
"""
from __future__ import annotations

WORDS = {
    "fr": ("le la les de des du un une et est que qui dans pour pas sur avec il elle nous "
           "vous ils elles au aux ce cette ces son sa ses leur mais plus très bien tout tous "
           "comme où quand aussi encore déjà toujours rivière banque argent maison ville pont "
           "marché pêcheur bateau port village année jour nuit eau pain sel laine verre corde "
           "cidre ardoise hareng papier être avoir faire aller venir voir savoir pouvoir "
           "vouloir dire prendre donner trouver parler passer rester devenir été fait dit "
           "grand petit nouveau vieux beau long haut premier dernier autre même chaque "
           "habitants fondée connue rivage forêt chemin école église château horloge"),
    "de": ("der die das und ist nicht ein eine zu den mit von dem sich des auf für im auch "
           "es an als wie noch nach bei aus so wenn nur aber über er sie wir ihr sein hat "
           "wird werden kann war sind oder schon sehr hier dort heute immer viel mehr Fluss "
           "Bank Geld Haus Stadt Brücke Markt Fischer Boot Hafen Dorf Jahr Tag Nacht Wasser "
           "Brot Salz Wolle Glas Seil Apfelwein Schiefer Hering Papier gehen kommen sehen "
           "wissen können wollen sagen nehmen geben finden sprechen bleiben gegründet "
           "bekannt groß klein neu alt schön lang hoch erste letzte andere jeder Einwohner "
           "Ufer Wald Weg Schule Kirche Schloss Uhr zwischen gegen durch ohne unter"),
    "es": ("el la los las de del y en que un una es por con para no se su sus al lo como más "
           "pero muy también ya todo todos cuando donde porque sobre entre sin hasta desde "
           "este esta estos año día noche río banco dinero casa ciudad puente mercado "
           "pescador barco puerto pueblo agua pan sal lana vidrio cuerda sidra pizarra "
           "arenque papel ser estar tener hacer ir venir ver saber poder querer decir "
           "tomar dar encontrar hablar quedar fundada conocida grande pequeño nuevo viejo "
           "hermoso largo alto primero último otro mismo cada habitantes orilla bosque "
           "camino escuela iglesia castillo reloj siempre aquí allí hoy mucho"),
}

# The island's facts in each language: {subject} and {object} are filled from tinygpt.world.
FACT_TEMPLATES = {
    "fr": {"river": "{subject} se trouve sur la rivière {object}.",
           "population": "{subject} compte {object} habitants.",
           "founded": "{subject} a été fondée en {object}.",
           "trade": "{subject} est connue pour son commerce ({object}).",
           "home": "{subject} habite à {object}.",
           "job": "{subject} travaille comme {object}.",
           "age": "{subject} a {object} ans."},
    "de": {"river": "{subject} liegt am Fluss {object}.",
           "population": "{subject} hat {object} Einwohner.",
           "founded": "{subject} wurde {object} gegründet.",
           "trade": "{subject} ist bekannt für den Handel mit {object}.",
           "home": "{subject} wohnt in {object}.",
           "job": "{subject} arbeitet als {object}.",
           "age": "{subject} ist {object} Jahre alt."},
    "es": {"river": "{subject} está junto al río {object}.",
           "population": "{subject} tiene {object} habitantes.",
           "founded": "{subject} fue fundada en {object}.",
           "trade": "{subject} es conocida por su comercio de {object}.",
           "home": "{subject} vive en {object}.",
           "job": "{subject} trabaja como {object}.",
           "age": "{subject} tiene {object} años."},
}

FORUM_OPENERS = ["Re:", "Quick question:", "Update:", "lol", "Same here.", "+1", "Thanks!",
                 "Has anyone else noticed", "Honestly,", "Off topic, but", "Bump.", "FWIW"]
FORUM_PHRASES = [
    "the ferry from {town} was late again", "does anyone know when the market opens",
    "I asked {person} and they had no idea", "my cousin moved to {town} last year",
    "the river {river} flooded the lower road", "prices at the {trade} stall went up",
    "you can't park near the harbour on Sundays", "the bank by the river had no money",
    "try the bakery next to the old clock tower", "this thread is getting off topic",
    "pics or it didn't happen", "I'll post the timetable when I get home",
    "the ferry pilot says the crossing will be rough tomorrow",
    "has the library in {town} changed its opening hours",
    "we walked along the {river} all afternoon and saw nobody",
    "the best {trade} on the island still comes from {town}",
    "{person} fixed our clock in ten minutes, highly recommended",
    "the school in {town} is looking for a new teacher",
    "does the harbour master in {town} answer the phone at all",
    "it rained for three days and the lower field is a lake",
    "my grandmother remembers when the bridge over the {river} was built",
    "anyone selling a used bicycle near {town}",
    "the night boat was cancelled again, no explanation",
    "I think the old mill by the {river} is being turned into flats",
    "that's not how the tide tables work, read them again",
    "please keep this thread about the festival",
]

SPAM_KEYWORDS = ["cheap", "best price", "buy now", "discount", "free shipping", "limited offer",
                 "top rated", "click here", "deal", "casino bonus", "weight loss", "miracle"]
NAV_ITEMS = ["Home", "About", "Products", "Services", "Blog", "Contact", "Login", "Sign up",
             "FAQ", "Careers", "Press", "Privacy", "Terms", "Sitemap", "Cart"]
COOKIE_BANNERS = [
    "We use cookies to improve your experience. By continuing you accept our use of cookies.",
    "This site uses cookies. Accept all | Reject all | Manage preferences",
    "Cookie settings: we and our partners store data on your device. Accept? Yes / No",
]
# Stand-ins for unwanted content: invented words on a blocklist, so that the course can
# teach blocklist filtering without printing real slurs.
BLOCKLIST = ["grobnak", "vilecrud", "skagmaw", "drelkish", "murkspawn"]

# Island news: what happened to whom; slots are filled at random, so no two items match.
NEWS_EVENTS = [
    "opened a new workshop near the harbour", "won the rowing race on the {river}",
    "repaired the old clock tower", "found a message in a bottle on the beach",
    "organised the winter market", "rescued a lamb from the cliffs",
    "gave a talk at the library about the history of the island",
    "caught the biggest herring of the season", "painted the ferry a bright blue",
    "planted an orchard above the town", "rang the bell for the new year",
    "led the walk along the {river} for the school", "built a boat in a single summer",
]
NEWS_DETAILS = [
    "The weather was {weather}.", "More than {n} people came to watch.",
    "{other} said it was the best day of the year.",
    "The {trade} sellers closed their stalls early.",
    "Nobody could remember anything like it since {year}.",
    "Tea and cake were served in the {place}.", "A letter of thanks arrived from the council.",
    "The story was told again in the {place} that evening.",
    "Photographs are on display in the {place} until {month}.",
    "A second event is planned for {month}.", "The children of {town2} sent drawings.",
    "It took {n2} hours from start to finish.", "The ferry waited an extra hour for the crowd.",
    "Some visitors had come all the way from {town2}.",
]
NEWS_FILL = {
    "weather": ["cold and bright", "wet and windy", "warm for the season", "foggy until noon"],
    "place": ["town hall", "library", "harbour inn", "church hall", "old mill", "school"],
    "month": ["January", "March", "May", "July", "September", "November"],
}
