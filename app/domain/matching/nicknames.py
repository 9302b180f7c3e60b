"""Given names that people use for one another: nicknames and short forms that spelling similarity
cannot find (Bill for William, Paco for Francisco, Kees for Cornelis). Short forms that are a prefix
of the full name (Alex, Max, Chris) need no entry: the name comparison accepts them on its own.

The groups are common usage in the seven markets we serve (FR, DE, GB, ES, IT, NL, US), written in
folded form (lower case, no accents). A name may sit in several groups (Toni: Antonio and Anthony).
"""

from __future__ import annotations

_GROUPS: tuple[tuple[str, ...], ...] = (
    # English
    ("william", "bill", "billy", "will", "willy", "liam"),
    ("robert", "bob", "bobby", "rob", "robbie", "bert"),
    ("richard", "dick", "rick", "ricky", "rich", "richie"),
    ("james", "jim", "jimmy", "jamie"),
    ("john", "jack", "johnny", "jon"),
    ("michael", "mike", "mikey", "mick", "micky"),
    ("charles", "charlie", "chuck", "chas"),
    ("edward", "ed", "eddie", "ted", "teddy", "ned"),
    ("anthony", "tony", "anton"),
    ("andrew", "andy", "drew"),
    ("joseph", "joe", "joey", "jo"),
    ("thomas", "tom", "tommy"),
    ("daniel", "dan", "danny"),
    ("david", "dave", "davy"),
    ("matthew", "matt", "matty"),
    ("stephen", "steven", "steve", "stevie"),
    ("alexander", "alex", "sandy", "xander"),
    ("benjamin", "ben", "benny"),
    ("samuel", "sam", "sammy"),
    ("peter", "pete"),
    ("kenneth", "ken", "kenny"),
    ("donald", "don", "donnie"),
    ("joshua", "josh"),
    ("nathan", "nate", "nathaniel"),
    ("jacob", "jake"),
    ("christopher", "chris", "kit"),
    ("elizabeth", "liz", "lizzie", "beth", "betty", "bess", "eliza", "elisa", "lisa", "elsie"),
    ("margaret", "maggie", "meg", "peggy", "madge", "marge", "greta", "gretchen"),
    ("katherine", "catherine", "kate", "katie", "kathy", "cathy", "kitty", "kat"),
    ("jennifer", "jen", "jenny"),
    ("patricia", "pat", "patty", "trish", "tricia"),
    ("susan", "sue", "susie", "suzy"),
    ("rebecca", "becky", "becca"),
    ("victoria", "vicky", "tori"),
    ("abigail", "abby", "gail"),
    ("deborah", "debbie", "deb"),
    ("kimberly", "kim"),
    ("stephanie", "steph", "steffi"),
    ("barbara", "barb", "babs"),
    ("alexandra", "sandra", "sandy", "alex", "sasha"),
    ("cynthia", "cindy"),
    ("jessica", "jess", "jessie"),
    ("amanda", "mandy"),
    ("melissa", "mel", "missy"),
    ("dorothy", "dot", "dottie"),
    ("eleanor", "ellie", "nell", "nora"),
    ("mary", "molly", "polly", "mae"),
    # English diminutives in -ie / -y and older short forms (not prefixes of the name, so the
    # comparison read them as other names: Willie beside William, Harry beside Henry)
    ("william", "willie"),
    ("david", "davey", "dai"),
    ("francis", "frank", "frankie"),
    ("henry", "harry", "hank", "hal"),
    ("harold", "harry", "hal"),
    ("arthur", "artie"),
    ("alfred", "alfie", "fred", "freddie"),
    ("frederick", "fred", "freddie", "freddy"),
    ("walter", "wally"),
    ("herbert", "bert", "bertie"),
    ("albert", "bert", "bertie"),
    ("ernest", "ernie"),
    ("archibald", "archie"),
    ("reginald", "reggie"),
    ("ronald", "ronnie"),
    ("leonard", "lenny"),
    ("montague", "monty"),
    ("hugh", "hughie"),
    ("augustus", "gus"),
    ("lawrence", "larry"),
    ("laurence", "larry"),
    ("gerald", "gerry", "jerry"),
    ("agnes", "aggie", "nessie"),
    ("sarah", "sally", "sadie"),
    ("harriet", "hattie"),
    ("henrietta", "hettie", "etta"),
    ("florence", "flo", "florrie", "flossie"),
    ("frances", "fanny", "fran", "frankie"),
    # French
    ("nicolas", "nico"),
    ("sebastien", "seb"),
    ("emmanuel", "manu"),
    ("philippe", "phil"),
    ("christophe", "chris"),
    ("frederic", "fred"),
    ("dominique", "dom"),
    ("isabelle", "isabel", "isa", "isabella", "bella"),
    ("valerie", "val"),
    ("jean baptiste", "jb"),
    ("jean pierre", "jp"),
    ("francois", "franck"),
    ("francoise", "fanfan"),
    # German
    ("johannes", "hannes", "hans", "jo", "johann", "jan", "johan"),
    ("josef", "joseph", "sepp", "seppi", "jupp"),
    ("katharina", "katrin", "katja", "kathi", "kati", "trine"),
    ("andreas", "andi", "andy"),
    ("sebastian", "basti"),
    ("tobias", "tobi"),
    ("florian", "flo"),
    ("wolfgang", "wolfi", "wolf"),
    ("susanne", "susi", "suse"),
    ("franziska", "franzi", "fanny"),
    ("juergen", "jurgen", "juri"),
    ("guenter", "gunter", "gunther"),
    ("barbel", "baerbel", "barbara"),
    ("kaethe", "kathe", "kathi", "katharina"),
    ("gisela", "gisi"),
    ("elisabeth", "lisbeth", "liesel", "lisa", "sissi", "elsbeth", "betty"),
    # Spanish
    ("jose", "pepe", "pepito", "chema"),
    ("francisco", "paco", "pancho", "curro", "fran", "quico"),
    ("manuel", "manolo", "manu", "lolo"),
    ("ignacio", "nacho"),
    ("jesus", "chus", "chuy", "chucho"),
    ("dolores", "lola", "loli"),
    ("concepcion", "concha", "conchi", "conchita"),
    ("guadalupe", "lupe", "lupita"),
    ("antonio", "toni", "tony", "tonio", "tonino", "tono", "toto", "nino"),
    ("rafael", "rafa"),
    ("fernando", "nando", "fer"),
    ("pilar", "pili"),
    ("mercedes", "merche", "meche"),
    ("cristina", "cris", "tina"),
    ("beatriz", "bea", "beatrice"),
    ("alejandro", "alex", "alejo"),
    ("enrique", "quique", "kike"),
    ("eduardo", "edu", "lalo"),
    ("rosario", "charo", "chayo"),
    ("consuelo", "chelo"),
    ("ana maria", "anamari", "ani"),
    # Italian
    ("giuseppe", "beppe", "peppe", "peppino", "pino", "bepi"),
    ("giovanni", "gianni", "nanni", "vanni"),
    ("francesco", "franco", "checco", "cecco", "ciccio"),
    ("alessandro", "sandro", "ale"),
    ("salvatore", "toto", "turi", "rino"),
    ("vincenzo", "enzo", "vince"),
    ("domenico", "mimmo", "mimi"),
    ("lorenzo", "enzo", "renzo"),
    ("roberto", "berto", "bob"),
    ("giuseppina", "pina", "peppina"),
    ("elisabetta", "betta", "elisa", "lisa"),
    ("federica", "fede"),
    ("federico", "fede"),
    ("valentina", "vale"),
    ("alessia", "ale"),
    ("niccolo", "nicola", "nico"),
    ("caterina", "rina", "cate"),
    # Dutch
    ("cornelis", "kees", "cees", "neel"),
    ("jacobus", "koos", "jaap", "sjaak", "co"),
    ("hendrik", "henk", "henkie", "rik", "henri"),
    ("pieter", "piet", "peter"),
    ("willem", "wim", "pim", "willy"),
    ("gerrit", "gert", "gerard"),
    ("wilhelmina", "mien", "willy", "mina", "wilma"),
    ("geertruida", "truus", "trudy", "geertje"),
    ("cornelia", "corrie", "nel", "cor", "nelleke"),
    ("johanna", "anneke", "jo", "hanna", "hannah", "hanneke", "janneke"),
    ("hendrika", "riek", "rika", "henny", "dika"),
    ("maarten", "martin"),
)


def _index(groups: tuple[tuple[str, ...], ...]) -> dict[str, frozenset[int]]:
    found: dict[str, set[int]] = {}
    for number, names in enumerate(groups):
        for name in names:
            found.setdefault(name, set()).add(number)
    return {name: frozenset(numbers) for name, numbers in found.items()}


_GROUPS_OF = _index(_GROUPS)
_NONE: frozenset[int] = frozenset()
# The first letters of every form of each name in a group: Toni's are A and T (Antonio, Anthony, Tony).
_FORMS_INITIALS = {
    name: frozenset(form[0] for number in numbers for form in _GROUPS[number]) for name, numbers in _GROUPS_OF.items()
}


def are_nicknames(a: str, b: str) -> bool:
    """True when two folded given names are one another's nickname or short form in a known group."""
    return a != b and not _GROUPS_OF.get(a, _NONE).isdisjoint(_GROUPS_OF.get(b, _NONE))


def forms_initials(name: str) -> frozenset[str]:
    """The initials a folded given name may be written as: its own, and those of its known nicknames
    and full forms (an initial "A." for Toni, written for Antonio)."""
    return _FORMS_INITIALS.get(name, frozenset(name[:1]))
