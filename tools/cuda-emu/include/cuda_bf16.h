// emulator: the types come from emu.h (included first)
