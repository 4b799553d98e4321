namespace Peft.CodeFixes;
internal static class Placeholder { }
