namespace Peft.Analyzers;
internal static class Placeholder { }
